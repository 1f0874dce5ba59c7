"""The 60-turn conversation on the local model (the compaction test and ``make bench memory`` share it):
a fact in turn 1, then a short question on one of 59 topics per turn."""

FACT = "PELICAN-42"
TOPICS = [
    "the moon", "volcanoes", "honey bees", "the Nile", "glaciers", "owls", "copper", "the Sahara", "tulips",
    "lightning", "penguins", "the Alps", "coral reefs", "bamboo", "comets", "salmon", "granite", "the Amazon",
    "wolves", "rainbows", "cacti", "tides", "hummingbirds", "Saturn", "maple trees", "octopuses", "deserts",
    "thunder", "dolphins", "oak trees", "Mars", "jellyfish", "caves", "sunflowers", "eagles", "icebergs",
    "whales", "fog", "the Arctic", "mushrooms", "geysers", "foxes", "pearls", "bats", "meteors", "rice",
    "waterfalls", "crows", "seahorses", "the Pacific", "tornadoes", "ferns", "lakes", "koalas", "clouds",
    "sand dunes", "otters", "Jupiter", "snow",
]

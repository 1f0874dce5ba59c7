"""Print the installed versions of the packages that matter most (`make versions`; CI prints them).

Standard library only. A package that is not installed prints ``-``.
"""

from importlib.metadata import PackageNotFoundError, version

KEY_PACKAGES = ("Django", "celery", "kombu", "openai", "httpx", "httpx2", "redis", "psycopg",
                "llama-cpp-python", "supervisor", "uvicorn")


def installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    for name in KEY_PACKAGES:
        print(f"{name:>18} {installed(name)}")

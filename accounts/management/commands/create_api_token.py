from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import ApiToken


class Command(BaseCommand):
    help = "Print a new API token for USERNAME (creating that user, without a password, if needed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, username: str, name: str, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
            self.stderr.write(f"Created user {username}.")
        _, token = ApiToken.issue(user=user, name=name)
        self.stdout.write(token)

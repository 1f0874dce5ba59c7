import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.first_start import save_generated_password


class Command(BaseCommand):
    help = (
        "Create the administrator on first start: ARBOR_ADMIN_USER (default admin) and "
        "ARBOR_ADMIN_PASSWORD, else a generated password kept in var/admin-password (mode 0600) until "
        "it is changed; the banner of `manage.py start_banner` shows it. Does nothing if any superuser exists."
    )

    # os.environ directly (the same as config.env.env with a default): accounts imports only audit and core.
    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("ARBOR_ADMIN_USER", "admin")
        password = os.environ.get("ARBOR_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            path = save_generated_password(username, password)
            self.stdout.write(f"Arbor administrator created: user {username!r}, generated password in {path}")
        else:
            self.stdout.write(f"Arbor administrator created: user {username!r} (password from ARBOR_ADMIN_PASSWORD)")

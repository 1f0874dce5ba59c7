from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save

from audit.log import track_changes


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # api_token.create / api_token.change / api_token.delete (not last_used_at bookkeeping)
        track_changes(self.get_model("ApiToken"), action_prefix="api_token")
        # Imported here: first_start reads the auth app's hashers, loaded with the app registry.
        from .first_start import forget_changed_password

        post_save.connect(forget_changed_password, sender=settings.AUTH_USER_MODEL,
                          dispatch_uid="accounts.forget_changed_password")

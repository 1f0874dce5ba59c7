from django.apps import AppConfig

from audit.log import track_changes


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # api_token.create / api_token.change / api_token.delete (not last_used_at bookkeeping)
        track_changes(self.get_model("ApiToken"), action_prefix="api_token")

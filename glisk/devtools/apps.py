from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """The development harness: the devnet (anvil with our contract), the webhook relay, the
    process stack and the `demo`, `serve`, `devnet` and `webhook_relay` commands. Settings install
    it outside production only; nothing in the production apps imports it."""

    name = "glisk.devtools"
    label = "devtools"
    verbose_name = "Development tools"

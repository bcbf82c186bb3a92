from django.contrib.admin.apps import AdminConfig


class GliskAdminConfig(AdminConfig):
    """The Django admin with the operators' dashboard as its index."""

    default_site = "glisk.backoffice.admin_site.GliskAdminSite"

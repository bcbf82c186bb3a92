from django.contrib import admin

from authors.models import Author


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ("wallet_address", "has_prompt", "twitter_handle", "farcaster_handle", "created_at")
    list_filter = (("prompt_text", admin.EmptyFieldListFilter),)
    search_fields = ("wallet_address", "twitter_handle", "farcaster_handle", "prompt_text")
    readonly_fields = ("created_at", "updated_at")

    @admin.display(boolean=True, description="prompt")
    def has_prompt(self, obj: Author) -> bool:
        return bool(obj.prompt_text)

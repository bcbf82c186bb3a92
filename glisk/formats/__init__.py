"""Date and time formats for the back office (Django's FORMAT_MODULE_PATH)."""

"""One router per resource; handlers are thin (queries live in api.crud)."""

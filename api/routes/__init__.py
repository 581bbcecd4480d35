"""One router per resource; handlers are thin (queries live in sikd_service.crud)."""

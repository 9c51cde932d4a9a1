"""One router per resource, joined in `service.app`."""

"""The Starlette app: routes grouped by resource, one auth layer, one error shape."""

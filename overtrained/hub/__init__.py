"""Public checkpoint families: pinning revisions and downloading them."""

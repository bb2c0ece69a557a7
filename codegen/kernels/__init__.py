"""Kernel modules; importing this package registers every lowering rule."""

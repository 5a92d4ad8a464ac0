"""Operator tools that are not part of the deployed app (``.funcignore`` leaves them out)."""

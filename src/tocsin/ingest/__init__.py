"""Parsers for everything that comes in: scheme files, area files, declaration files.

One parser per kind of input; every door (CLI, HTTP, importers) goes through it.
"""

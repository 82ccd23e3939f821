"""The explicit route's discrete bridge: semantic item codes, their tokens, and the trie of valid codes."""

from rec_rl.codes.build import ItemCodes, item_codes

__all__ = ["ItemCodes", "item_codes"]

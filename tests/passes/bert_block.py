"""The BERT-style encoder block the rewrite tests use (the builder lives in nnforge.models.bert)."""
from nnforge.models.bert import bert_block

__all__ = ["bert_block"]

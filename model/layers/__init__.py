"""Keras layers, one per module; masking.py holds the shared masked-softmax math."""
from model.layers.din_attention import DINAttention
from model.layers.event_embedding import EventEmbedding, time_delta_bucket
from model.layers.hashed_embedding import HashedEmbedding
from model.layers.history_view import HistoryView
from model.layers.rankmixer import RankMixerBlock
from model.layers.stca_attention import STCAAttention
from model.layers.swiglu import SwiGLU
from model.layers.target_attention import TargetAttention
from model.layers.token_fusion import TokenFusion
from model.layers.transformer_block import TransformerBlock
from model.layers.user_tokens import UserTokens

__all__ = ["DINAttention", "EventEmbedding", "HashedEmbedding", "HistoryView",
           "RankMixerBlock", "STCAAttention", "SwiGLU", "TargetAttention", "TokenFusion",
           "TransformerBlock", "UserTokens", "time_delta_bucket"]

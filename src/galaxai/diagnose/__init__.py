"""galaxai.diagnose: find data-preparation mistakes a discriminator can exploit."""
from galaxai.diagnose.padding import (
    PaddingAudit,
    Planted,
    add_padded_band,
    add_rotated_frame,
    audit_padding,
    audit_store,
    padded_band_mask,
)

__all__ = [
    "PaddingAudit",
    "Planted",
    "add_padded_band",
    "add_rotated_frame",
    "audit_padding",
    "audit_store",
    "padded_band_mask",
]

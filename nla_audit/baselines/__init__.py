"""Baselines the NLA is compared against, behind the same ``Explainer`` interface (``nla_audit.explainer``).

* ``sae``: a sparse autoencoder trained with SAELens on the NLA's own site (model, layer K); an activation is
  explained by its top active latents and their auto-interpretation labels (``sae_labels``).

Importing this package is cheap: ``sae_lens`` (about 9 s to import) is loaded only when an SAE is trained or
loaded.
"""

from nla_audit.baselines.sae import SAEExplainer
from nla_audit.site import Site, check_same_site

__all__ = ["SAEExplainer", "Site", "check_same_site"]

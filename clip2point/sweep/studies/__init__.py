"""The paper's studies, one module each; ``sweeps/<study>.py`` runs them."""

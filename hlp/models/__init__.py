"""Pure PyTorch: the co-occurrence model, its ablation variants and the losses. No I/O, no Ray, no MLflow."""

"""The transfer recipe: data -> features -> model -> embeddings -> backends -> fine-tuning -> results."""

"""Modality embeddings of the items (stages embed_text and embed_image).

- `text`: item text from a field template, encoded by a sentence-transformers model (or shipped features);
- `image`: pooled features of a timm model over local files / cached URL downloads (or shipped features);
- `common`: items input, shipped feature matrices, batch-wise sharding and the gather step, the output table.
"""

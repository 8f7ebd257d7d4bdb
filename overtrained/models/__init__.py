"""The tiny OLMo-2 model and loading of any checkpoint (local or Hub)."""

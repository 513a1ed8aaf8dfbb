"""slmforge: does a LoRA-fine-tuned small language model beat prompting a large one, and how to deploy the mix."""

__version__ = "0.1.0"

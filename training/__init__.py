"""nla_audit.training: datagen, AR SFT, AV SFT and GRPO with a live AR, in plain PyTorch + transformers."""

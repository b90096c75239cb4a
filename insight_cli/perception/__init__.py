"""The perception module shared by pretrain and train: network and losses (DESIGN §3)."""

"""The perception module shared by pretrain and train: network and losses (docs/design.md §8)."""

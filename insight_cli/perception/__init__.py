"""The perception module shared by pretrain and train: network and losses (docs/design.md §8)."""

ENCODERS = ("insight", "nature")  # convolution stacks: the paper's 5x5 one, and the DQN Atari CNN
MAX_OBJECTS = 256  # object slots the network supports at most

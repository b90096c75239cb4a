"""The perception module shared by pretrain and train: network and losses (docs/design.md §8)."""

ENCODERS = ("insight", "nature")  # convolution stacks: the paper's 5x5 one, and the DQN Atari CNN
MAX_OBJECTS = 256  # object slots the network supports at most
# What the coordinates the network predicts mean: shown to readers of equations and to LLMs.
COORDINATE_CONVENTION = (
    "Coordinates are object centres as fractions of the screen: origin at the top-left corner, "
    "x grows to the right and y grows downward, both in [0, 1]. Frame 1 is the oldest of the four "
    "stacked frames and frame 4 the current one. An object not on screen has x = y = 0."
)

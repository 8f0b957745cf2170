"""Reserved token ids, shared by the vocabulary, the models and sampling.

Characters start at id N_RESERVED: PAD fills conv stacks up to their padded length (and is
never scored), START opens every decoder input, DUMMY replaces an input dropped by input
("word") dropout, and UNK stands for a character outside the training vocabulary.
"""

PAD, START, DUMMY, UNK = 0, 1, 2, 3
N_RESERVED = 4

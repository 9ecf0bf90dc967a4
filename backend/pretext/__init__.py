"""Pure tensor operations and losses for the pretext-task and contrastive-variant methods.

Everything here works on whole batches on the training device; randomness comes from an explicit
CPU ``torch.Generator`` (drawn on the CPU, then moved), so a seed gives the same views on every
device. Modules, one concern each:

* :mod:`.lab` - sRGB <-> CIE Lab and the L / ab split (colorization);
* :mod:`.colorization` - Zhang et al. 2016's quantised ab bins, soft encoding, rebalancing, loss;
* :mod:`.patches` - jittered 3 x 3 tile grids, relative patch location, the CPC patch grid,
  patchify / unpatchify;
* :mod:`.jigsaw` - the maximal-Hamming permutation set and tile shuffling;
* :mod:`.masks` - context-encoder masks and MAE's random patch masking;
* :mod:`.reconstruction` - MAE's and the context encoder's masked pixel losses;
* :mod:`.cpc` - CPC v2's InfoNCE over a patch grid;
* :mod:`.memory_bank` - instance discrimination (Wu et al. 2018) and PIRL's bank losses;
* :mod:`.mochi` - MoCHi's synthesised hard negatives for a MoCo queue.
"""

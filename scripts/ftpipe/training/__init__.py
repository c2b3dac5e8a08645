"""What only the train stage uses: the speed plan and its levers, the training steps, checkpoints,
data-parallel processes and the stage's outputs."""

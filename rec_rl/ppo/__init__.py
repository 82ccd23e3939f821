"""PPO (learned critic, GAE) through verl: rec-rl's data and reward functions in verl's formats.

TRL 1.16 has no PPO trainer, so `train.algorithm=ppo` runs verl (the engine Rec-R1 was built on):
`export` writes the task as verl's parquet rows, `reward.compute_score` is verl's custom reward
function backed by rec-rl's own reward functions, and `launch` starts `verl.trainer.main_ppo`.
"""

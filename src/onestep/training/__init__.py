"""Training: one method-blind loop for the DDPM teacher and every one-step student.

train.py builds a run's method and network (train_teacher, train_student); loop.py is the loop (fit);
state.py the loop's resume state (LoopState), resume.py its checkpoint (Resume, Preempted); batches.py the
pair and data streams; ema.py the EMA copy; schedule.py the learning rate; passes.py the student's pass
counters. Nothing here names a method.
"""

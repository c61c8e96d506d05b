"""The names Orion's parts find each other by: one Ray namespace and the detached actors' names.

Constants only (standard library, no imports), so any layer can reach an actor by its name without
importing the module that defines it: the serving manager asks the scheduler to make room, the
scheduler asks the serving manager for its GPUs, and neither package imports the other.
"""

NAMESPACE = "orion"  # Ray namespace of every named actor, placement group and KV key of Orion
SCHEDULER_NAME = "orion-scheduler"
AUTOSCALER_NAME = "orion-autoscaler"
SERVING_NAME = "orion-serving"  # the deployment manager of model serving
EXECUTOR_NAME = "orion-executor"  # runs task workloads inside their placement groups
# the settings row where a region's agent records the state its control plane answered (draining
# regions refuse dispatches: api/region_gate.py); here so neither side imports the other
REGION_GATE_SETTING = "region_dispatch_state"

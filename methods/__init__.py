"""The method registry: one line per method, ``name -> "module:Class"``.

Methods from other installed packages register through the ``coldbench.methods`` entry-point group;
``benchmark.registry`` merges both and refuses duplicate names.
"""

REGISTRY: dict[str, str] = {
    "global-mean": "methods.floors:GlobalMean",
    "item-mean": "methods.floors:ItemMean",
    "popularity": "methods.floors:Popularity",
    "random": "methods.floors:Random",
    "mf-target": "methods.mf_target:TargetMF",
    "cmf": "methods.cmf:CMF",
    "emcdr": "methods.emcdr:EMCDR",
    "ptupcdr": "methods.ptupcdr:PTUPCDR",
    "finetune": "methods.finetune:FineTune",
    "maml": "methods.maml:MAML",
    "protonet": "methods.protonet:ProtoNet",
    "siamese": "methods.siamese:Siamese",
    "bias-transfer": "methods.bias_transfer:BiasTransfer",
    "user-knn": "methods.user_knn:UserKNN",
    "item-knn": "methods.item_knn:ItemKNN",
    "ease": "methods.ease:EASE",
}

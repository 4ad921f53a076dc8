"""Evaluation: PoseTrack mAP (poseval), COCO OKS AP (pycocotools), PCK/PCKh helpers."""

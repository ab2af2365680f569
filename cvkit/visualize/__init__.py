"""Pictures: plots of evaluation results and training curves (``plots``,
``detection_plots``; matplotlib, no pyplot state) and drawings on images (``draw``; OpenCV)."""

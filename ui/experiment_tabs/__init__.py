"""The experiment page's parts, one module per section and tab: the stages and curves (``progress``), then the
results' tabs (``scores``, ``distributions``, ``cases``, ``overlays``, ``features``, ``downloads``). The page
(``ui/app_pages/experiment.py``) loads the experiment and hands each an :class:`ExperimentView`."""

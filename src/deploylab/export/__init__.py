"""Take-home copies of the workbook: lessons as standalone HTML and PDF (``deploylab
export-html``), and a browser-only JupyterLite site (``deploylab export-lite``)."""

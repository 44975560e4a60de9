// deploylab present: the slides start as the lesson opens, with no key to press.
// JupyterLab loads this file only under `deploylab present` (its extra_labextensions_path).
// When a notebook opens and its kernel is idle, the plugin runs the notebook's slide-mode cell
// (metadata.deploylab.slide_control); the SlideMode widget it draws then starts the slides,
// because `deploylab present` tells the kernel to (DEPLOYLAB_PRESENT). A notebook without
// that cell is left alone.
//
// The file is the module-federation container JupyterLab's loader expects of a prebuilt
// extension (window._JUPYTERLAB[name] with init() and get("./extension"), see JupyterLab's
// bootstrap.js); the plugin uses only the application object JupyterLab hands it, so it
// needs no webpack build and shares no module.
(function () {
  const NAME = "deploylab-present";
  const KERNEL_WAIT_MS = 180000;  // a loaded machine starts a kernel slowly

  const controlCellIndex = (notebook) =>
    notebook.widgets.findIndex((cell) => {
      const metadata = cell.model.getMetadata ? cell.model.getMetadata("deploylab") : null;
      return cell.model.type === "code" && Boolean(metadata && metadata.slide_control);
    });

  const kernelIdle = (panel) =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
        if (kernel && kernel.status === "idle" && kernel.connectionStatus === "connected") resolve();
        else if (panel.isDisposed) reject(new Error("the notebook was closed"));
        else if (Date.now() - started > KERNEL_WAIT_MS) reject(new Error(`no idle kernel in ${KERNEL_WAIT_MS / 1000} s`));
        else setTimeout(poll, 200);
      };
      poll();
    });

  const plugin = {
    id: `${NAME}:start-slides`,
    description: "Run a lesson's slide-mode cell when it opens under deploylab present.",
    autoStart: true,
    activate: (app) => {
      const seen = new WeakSet();
      const start = async (panel) => {
        if (!panel || seen.has(panel) || !panel.content || !panel.sessionContext || !panel.context) return;
        seen.add(panel);
        await panel.context.ready;
        const notebook = panel.content;
        const index = controlCellIndex(notebook);
        if (index < 0) return;
        await panel.sessionContext.ready;
        await kernelIdle(panel);
        if (notebook.widgets[index].model.executionCount !== null) return;  // already run
        app.shell.activateById(panel.id);
        notebook.activeCellIndex = index;
        notebook.deselectAll();
        await app.commands.execute("notebook:run-cell");
      };
      const startLogged = (panel) =>
        start(panel).catch((error) => console.warn(`${NAME}: slides not started: ${error.message}`));
      app.restored.then(() => {
        startLogged(app.shell.currentWidget);
        app.shell.currentChanged.connect((_, change) => startLogged(change.newValue));
      });
    },
  };

  const registry = (window._JUPYTERLAB = window._JUPYTERLAB || {});
  registry[NAME] = {
    init: () => Promise.resolve(),  // nothing shared, nothing needed
    get: (module) =>
      module === "./extension"
        ? Promise.resolve(() => ({ __esModule: true, default: plugin }))
        : Promise.reject(new Error(`${NAME} has no module ${module}`)),
  };
})();

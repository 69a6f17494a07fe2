"""The ``%parallax`` magics: one line/cell magic with a sub-command per action.

    %parallax connect [ADDRESS | --local N]     %parallax cluster
    %parallax analyze PROGRAM                   %%parallax train [options]  (cell: the program)
    %parallax status | stop | wait              %parallax check [--quick]

Arguments are parsed by IPython's ``MagicArgumentParser`` (errors are UsageErrors, not exits);
``%parallax?`` and ``%parallax --help`` print the usage of every sub-command.
"""
from __future__ import annotations

import time

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.core.error import UsageError
from IPython.display import display

from ..cli_options import add_training_arguments, training_options
from ..config import AUTO_MODE, MODES, Config
from ..errors import ParallaxError, ProgramError
from ..program import FUNCTIONS, OPTIONAL_FUNCTIONS, Program, load_program
from .frontend import widgets_enabled
from .session import current_session
from .views.variables_view import VariablesView, parse_partitions


def build_parser():
    """The parser of every sub-command, and the sub-commands' own parsers by name."""
    parser = MagicArgumentParser(
        prog="parallax", description="Distributed sparsity-aware training from a notebook.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=MagicArgumentParser)

    connect = commands.add_parser(
        "connect", help="connect to a Dask cluster, or start an embedded one",
        description="Connect to the Dask scheduler at ADDRESS, or (no ADDRESS) start an "
                    "embedded LocalCluster; then show the cluster panel.")
    connect.add_argument("address", nargs="?", help="scheduler address, e.g. tcp://host:8786")
    connect.add_argument("--local", type=int, metavar="N",
                         help="worker processes of the embedded cluster (default 2)")
    connect.add_argument("--slots", type=int, default=1, metavar="N",
                         help="CPU slots (ranks) per embedded worker (default 1)")
    connect.add_argument("--simulate-hosts", type=int, metavar="H",
                         help="label the embedded workers as H hosts")
    connect.add_argument("--timeout", type=float, default=10.0, metavar="S",
                         help="seconds to wait for a remote scheduler (default 10)")

    cluster = commands.add_parser(
        "cluster", help="the cluster panel: hosts, devices, the selection train uses",
        description="Show hosts and their GPUs or CPU slots; the ticked devices are what "
                    "%%parallax train runs on.")
    cluster.add_argument("--refresh", action="store_true",
                         help="re-read the devices (resets the selection)")

    check = commands.add_parser(
        "check", help="is the cluster ready for a run? one row per worker and need",
        description="Check every worker of the connected cluster: Python, TensorFlow, Keras, "
                    "Horovod (TensorFlow ops, Gloo), parallax_nb against this kernel's; GPUs "
                    "and the CUDA_VISIBLE_DEVICES of each rank of the ticked devices; "
                    "hostname address, Horovod's interface, TCP between machines. Failed rows "
                    "say how to fix them.")
    check.add_argument("--quick", action="store_true",
                       help="versions from the installed files only (what train checks)")

    analyze = commands.add_parser(
        "analyze", help="the sparse-variable view of a program",
        description="Analyse PROGRAM (a px.Program in the notebook, or module:attribute) and "
                    "show its variables, placement and bytes per step for the selection.")
    analyze.add_argument("program", help="a name in the notebook or module:attribute")
    analyze.add_argument("--steps", type=int, default=5, help="gradient steps to trace")
    _add_plan_options(analyze)

    train = commands.add_parser(
        "train", help="(cell magic) train the program the cell defines",
        description="The cell is single-device code defining model_fn, loss_fn, dataset_fn "
                    "and optimizer_fn (or model_fn returning a compiled Keras model and "
                    "dataset_fn), optionally validation_fn and metrics_fn; it is run, analysed "
                    "and launched on the selected devices, and the run panel follows it.")
    _add_plan_options(train)
    add_training_arguments(train)
    train.add_argument("--batch-size", type=int, help="examples per rank and step")
    train.add_argument("--sum-sparse", action="store_true",
                       help="sum sparse gradients over ranks (the paper's default) instead of "
                            "averaging them like every other gradient")
    train.add_argument("--no-local-aggregation", action="store_true",
                       help="every rank pushes its own sparse gradients to the servers")
    train.add_argument("--log-every", type=int, default=1, metavar="N",
                       help="report metrics every N steps")
    train.add_argument("--analysis-steps", type=int, default=2, metavar="N",
                       help="steps traced to find the sparse variables (default 2)")
    train.add_argument("--name", default="program", help="the program's name in reports")
    train.add_argument("--out", metavar="VAR", help="also store the Run in this variable")
    train.add_argument("--wait", action="store_true",
                       help="block until the run is over (raising its error)")

    commands.add_parser("status", help="progress of the current run",
                        description="Print the current run's status and progress.")
    commands.add_parser("stop", help="stop the current run",
                        description="Stop every rank and server of the current run.")
    commands.add_parser("wait", help="wait for the current run; raise its error",
                        description="Block until the current run is over.")
    return parser, commands.choices


def _add_plan_options(parser):
    parser.add_argument("--mode", type=str.upper, choices=MODES + (AUTO_MODE,),
                        default="HYBRID", help="HYBRID (default), PS, AR or auto")
    parser.add_argument("--partitions", metavar="P",
                        help="partitions per sparse variable: an int, or auto")
    parser.add_argument("--servers", type=int, metavar="S",
                        help="parameter servers (default one per selected host)")


PARSER, COMMANDS = build_parser()


def usage() -> str:
    """The whole help: the command list, then every command's own usage."""
    return "\n\n".join([PARSER.format_help()] + [c.format_help() for c in COMMANDS.values()])


@magics_class
class ParallaxMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.session = current_session()

    @line_cell_magic
    def parallax(self, line, cell=None):
        tokens = line.split()
        if not tokens or tokens[0] in ("-h", "--help", "help"):
            print(usage())
            return None
        if "-h" in tokens[1:] or "--help" in tokens[1:]:
            if tokens[0] in COMMANDS:
                print(COMMANDS[tokens[0]].format_help())
                return None
        args = PARSER.parse_argstring(line)
        if args.command == "train":
            if cell is None:
                raise UsageError("train is a cell magic: write `%%parallax train` on the first "
                                 "line and the program (model_fn, loss_fn, dataset_fn, "
                                 "optimizer_fn) below it")
            return self._train(args, cell)
        if cell is not None:
            raise UsageError(f"%%parallax {args.command} takes no cell body; only train does")
        return getattr(self, f"_{args.command}")(args)

    # -- sub-commands ------------------------------------------------------------------------
    def _connect(self, args):
        options = {}
        if args.address is None:
            options = dict(local=args.local, slots_per_worker=args.slots,
                           simulate_hosts=args.simulate_hosts)
        elif args.local is not None or args.simulate_hosts is not None:
            raise UsageError("--local and --simulate-hosts start an embedded cluster; they "
                             "cannot be combined with an ADDRESS")
        self.session.connect(args.address, timeout=args.timeout, **options)
        self._show_cluster()

    def _cluster(self, args):
        if args.refresh:
            self.session.refresh()
        self.session.require_cluster()
        self._show_cluster()

    def _check(self, args):
        from ..cluster.check import check

        session = self.session
        result = check(session.require_cluster(), session.selection, quick=args.quick)
        if widgets_enabled():
            display(result)
        else:
            print(result)
        return None

    def _analyze(self, args):
        from ..analysis import analyze

        program = self._program(args.program)
        config = _plan_config(args)
        report = analyze(program, steps=args.steps, config=config)
        session = self.session
        view = VariablesView(report, session.selection if session.cluster else None, config)
        if widgets_enabled():
            from .widgets.variables_panel import VariablesPanel

            display(VariablesPanel(view, session.cluster_view))
        else:
            print(view.text())

    def _train(self, args, cell):
        from ..analysis import analyze
        from ..training import train

        config = _plan_config(args).replace(
            batch_size=args.batch_size, average_sparse=not args.sum_sparse,
            local_aggregation=not args.no_local_aggregation, log_every=args.log_every,
            **training_options(args))
        session = self.session
        if session.run is not None and not session.run.done:
            raise ParallaxError(f"run {session.run.run_id} is still {session.run.status}: "
                                f"`%parallax stop` it (or `%parallax wait`) first")
        panel = self._new_run_panel(args.name)
        try:
            program = program_from_cell(self.shell, cell, args.name)
            if session.cluster is None:
                print("No cluster yet: starting an embedded one (`%parallax connect` to choose).")
                session.connect()
            selection = session.selection
            report = analyze(program, steps=args.analysis_steps, config=config)
            run = train(program, cluster=session.cluster, select=selection, config=config,
                        report=report, progress=panel is None)   # the panel shows trials
        except Exception as exc:
            if panel is not None:
                panel.fail(exc)
            raise
        session.follow(run, panel)
        if args.out:
            self.shell.user_ns[args.out] = run
        if args.wait:
            self._wait(args, progress=panel is None)

    def _status(self, args):
        self.session.require_run()
        print(self.session.run_text())

    def _stop(self, args):
        run = self.session.require_run()
        run.stop()
        print(f"run {run.run_id}: {run.status}")

    def _wait(self, args, progress: bool = True):
        """Block until the run is over (Ctrl-C stops it); a text progress bar where no
        panel shows one; the run's error is raised as the cell's error."""
        from tqdm.auto import tqdm

        run = self.session.require_run()
        view = self.session.run_view
        bar = tqdm(total=run.config.steps, unit="step", disable=not progress)
        try:
            while not run.done:
                bar.update(view.steps_done - bar.n)
                time.sleep(0.5)
            bar.update(view.steps_done - bar.n)
        except KeyboardInterrupt:
            run.stop()
            raise
        finally:
            bar.close()
        run.wait()
        if progress:
            print(run.report())

    # -- helpers -----------------------------------------------------------------------------
    def _program(self, reference: str) -> Program:
        """A Program named in the notebook, or ``module:attribute``."""
        if reference in self.shell.user_ns:
            program = self.shell.user_ns[reference]
            if not isinstance(program, Program):
                raise ProgramError(f"{reference} is a {type(program).__name__}, not a "
                                   f"parallax_nb.Program")
            return program
        if ":" in reference:
            return load_program(reference)
        raise ProgramError(f"{reference!r} is neither a name in this notebook nor "
                           f"module:attribute (e.g. parallax_nb.examples.language_model:program)")

    def _show_cluster(self):
        view = self.session.cluster_view
        if widgets_enabled():
            from .widgets.cluster_panel import ClusterPanel

            display(ClusterPanel(view))
        else:
            print(view.text())

    def _new_run_panel(self, title: str):
        if not widgets_enabled():
            return None
        from .widgets.run_panel import RunPanel

        panel = RunPanel(title)
        display(panel)
        return panel


def program_from_cell(shell, cell: str, name: str) -> Program:
    """Run the cell as ordinary notebook code, then take the program it defined.

    The cell runs in the notebook's namespace (so it sees earlier imports, and the same
    code works without the magic); its source is registered with IPython so tracebacks of
    errors in it show the offending line. The program is the four functions, or, where
    neither ``loss_fn`` nor ``optimizer_fn`` exists, ``model_fn`` returning a compiled model
    with ``dataset_fn`` (`Program.from_keras`). A ``validation_fn`` or ``metrics_fn`` the
    cell itself defines (not one left from an earlier cell) joins it."""
    before = {f: shell.user_ns.get(f) for f in OPTIONAL_FUNCTIONS}
    source = shell.transform_cell(cell)
    filename = shell.compile.cache(source)
    exec(compile(source, filename, "exec"), shell.user_ns)
    functions = {f: shell.user_ns.get(f) for f in FUNCTIONS}
    optional = {f: shell.user_ns.get(f) for f in OPTIONAL_FUNCTIONS
                if callable(shell.user_ns.get(f)) and shell.user_ns.get(f) is not before[f]}
    compiled = not callable(functions["loss_fn"]) and not callable(functions["optimizer_fn"])
    needed = ("model_fn", "dataset_fn") if compiled else FUNCTIONS
    missing = [f for f in needed if not callable(functions[f])]
    if missing:
        raise ProgramError(f"the cell must define {', '.join(missing)}: the body of "
                           f"%%parallax train is single-device code defining model_fn(), "
                           f"loss_fn(model, batch), dataset_fn(shard, num_shards[, batch_size]) "
                           f"and optimizer_fn(), or model_fn() returning a compiled Keras model "
                           f"and dataset_fn (validation_fn and metrics_fn are optional)")
    if compiled:
        if "metrics_fn" in optional:
            raise ProgramError("a compiled model's metrics come from its compile(metrics=...): "
                               "drop metrics_fn, or write loss_fn and optimizer_fn too")
        return Program.from_keras(functions["model_fn"], functions["dataset_fn"],
                                  optional.get("validation_fn"), name=name)
    return Program(name=name, **functions, **optional)


def _plan_config(args) -> Config:
    """Mode, servers and partitions; without --partitions, Config's default applies."""
    partitions = {} if args.partitions is None else \
        {"partitions": parse_partitions(args.partitions)}
    return Config(mode=args.mode, servers=args.servers, **partitions)


ParallaxMagics.parallax.__doc__ = __doc__ + "\n" + usage()


def load_ipython_extension(ipython):
    ipython.register_magics(ParallaxMagics(ipython))

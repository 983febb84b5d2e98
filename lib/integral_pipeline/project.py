"""Where a project's notebooks, parameter files and run folders are: given, never guessed from this package's path."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

#: The setting naming the project folder when neither the command line nor the caller gives one.
PROJECT_ENV = "INTEGRAL_PIPELINE_PROJECT"


@dataclasses.dataclass(frozen=True)
class Project:
    """The folders of a project of notebooks.

    Parameters
    ----------
    root : Path
        The project folder (``run_all.py`` passes its own folder).
    notebooks_dir : Path
        The notebooks of the workflows that do not name their own folder (``<root>/notebooks``).
    parameters_dir : Path
        The parameter files (``<root>/parameters``).
    output_root : Path
        The default root of run folders (``<root>/outputs``).
    """

    root: Path
    notebooks_dir: Path
    parameters_dir: Path
    output_root: Path

    @classmethod
    def at(cls, root: str | Path) -> Project:
        """Return the project in ``root`` with the usual layout (``notebooks/``, ``parameters/``, ``outputs/``).

        Parameters
        ----------
        root : str or Path
            The project folder.

        Returns
        -------
        Project
            With absolute folders.
        """
        root = Path(root).resolve()
        return cls(
            root=root,
            notebooks_dir=root / "notebooks",
            parameters_dir=root / "parameters",
            output_root=root / "outputs",
        )

    @classmethod
    def from_setting(cls) -> Project:
        """Return the project named by ``$INTEGRAL_PIPELINE_PROJECT``, else the working folder.

        Returns
        -------
        Project
            The project.
        """
        return cls.at(os.environ.get(PROJECT_ENV) or Path.cwd())

    def display(self, path: str | Path) -> str:
        """Show a path as a user would type it: relative to the project or the working folder when inside.

        Parameters
        ----------
        path : str or Path
            Any path.

        Returns
        -------
        str
            ``notebooks/mosaic.ipynb``, ``out/long_term/...`` or the path as given.
        """
        return display_path(path, bases=(self.root,))


def display_path(path: str | Path, *, bases: tuple[Path, ...] = ()) -> str:
    """Show ``path`` relative to the first of ``bases`` (then the working folder) that holds it.

    Parameters
    ----------
    path : str or Path
        Any path.
    bases : tuple of Path
        Folders to show it relative to, in order of preference.

    Returns
    -------
    str
        A POSIX relative path, or the path as given when it is in none of them.
    """
    path = Path(path)
    for base in (*bases, Path.cwd()):
        try:
            return path.resolve().relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def resolve_project(project: Project | str | Path | None) -> Project:
    """Return ``project`` as a :class:`Project`: a folder becomes one, None the configured one.

    Parameters
    ----------
    project : Project, str, Path or None
        A project, its folder, or None for :meth:`Project.from_setting`.

    Returns
    -------
    Project
        The project.
    """
    if isinstance(project, Project):
        return project
    if project is None:
        return Project.from_setting()
    return Project.at(project)

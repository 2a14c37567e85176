"""The package's layout (docs/ARCHITECTURE.md): modules of one concern, short functions,
an import graph without cycles, and one seam that knows about processes."""

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(glob.glob(os.path.join(REPO, 'piekd_mjx', '*.py'))
                 + glob.glob(os.path.join(REPO, 'envs', '*.py')))
MAX_LINES, MAX_FUNCTION_LINES = 420, 80


def _tree(path):
  with open(path, encoding='utf-8') as f:
    return ast.parse(f.read(), path)


def _name(path):
  return os.path.basename(path)[:-3]


def test_no_module_is_over_about_400_lines():
  sizes = {_name(p): sum(1 for _ in open(p, encoding='utf-8')) for p in MODULES}
  assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_function_is_over_80_lines():
  long = [f'{_name(p)}.{node.name} ({node.end_lineno - node.lineno + 1})'
          for p in MODULES for node in ast.walk(_tree(p))
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
  assert long == []


def _imports(path):
  """The piekd_mjx modules ``path`` imports, at any depth (those only for type checking
  too)."""
  found = set()
  for node in ast.walk(_tree(path)):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('piekd_mjx'):
      parts = node.module.split('.')
      found |= {a.name for a in node.names} if len(parts) == 1 else {parts[1]}
  return found - {_name(path)}


def test_the_import_graph_has_no_cycle():
  graph = {_name(p): _imports(p) for p in MODULES
           if os.path.dirname(p).endswith('piekd_mjx')}
  done, cycles = set(), []

  def visit(module, path):
    for other in sorted(graph.get(module, ())):
      if other in path:
        cycles.append(path[path.index(other):] + [other])
      elif other not in done:
        visit(other, path + [other])
    done.add(module)

  for module in graph:
    visit(module, [module])
  assert cycles == []


def test_only_processes_asks_how_many_processes_there_are():
  asking = []
  for p in MODULES:
    if _name(p) in ('processes', 'launch', 'sweep'):  # the command lines join them
      continue
    for node in ast.walk(_tree(p)):
      if (isinstance(node, ast.Attribute) and node.attr in ('is_primary', 'index',
                                                             'process_index', 'process_count')
          and getattr(node.value, 'id', '') in ('processes', 'jax')):
        asking.append(f'{_name(p)}:{node.lineno} {node.value.id}.{node.attr}')
  assert asking == []

"""The agent of a task's session (every run but a thread's, `worker/conversation.py`):
who it is, what it is told, which tools it gets.

- Its agent is the session's (`agent_name`): for a task claimed from a lane, the lane's
  own agent; for a spawned helper, the agent its spawn named. An agent of the agents
  file runs with its instructions and its valid soul projected after them
  (`agentdefs/soul.py`), and the run's trace records the soul's digest (`souls`); the
  lane's own agent has generic instructions and no soul.
- Its tools are the lane's that the session's permissions list (a helper's are at most
  its parent's): the built-in ones (`worker/tools.py`; an agents-file agent only those
  its definition lists too), and the agent runtime's (`worker/runtime_tools.py`), which
  come with the session, not with the agent's specialism, and only when the run has the
  runtime; a ticket's agent also gets the steering acknowledgement (`worker/steering.py`)
  and, with the runtime, its change gate's tools (`worker/change_tools.py`).
"""

from agents import Agent, FunctionTool

from ledger.agent_registry import AgentRegistry
from worker.change_tools import CHANGE_TOOLS
from worker.change_tools import INSTRUCTIONS as CHANGE_INSTRUCTIONS
from worker.context import RunContext
from worker.runtime_tools import RUNTIME_TOOLS
from worker.steering import ACK_STEERING, ticket_agent_id
from worker.steering import INSTRUCTIONS as STEERING_INSTRUCTIONS
from worker.tools import TOOLS, tools_for


def session_agent(run: RunContext) -> Agent[RunContext]:
    task, session = run.task, run.claim.grant.session
    task_line = f"Task: {task.title}"
    registry = _registry(run)
    if registry is not None and session.agent_name in registry:
        instructions = f"{registry.instructions_of(session.agent_name)}\n\n{task_line}"
    else:
        instructions = (
            f"You are an agent working in lane {task.lane} at mutation level "
            f"{task.mutation_level}. {task_line}"
        )
    tools = _tools(run, registry)
    if ticket_agent_id(run) is not None:
        # A ticket's agent says when it has taken a steering note into account, and
        # passes a change gate before it changes anything.
        instructions += "\n" + STEERING_INSTRUCTIONS
        tools.append(ACK_STEERING)
        if run.agent_runtime is not None:
            instructions += "\n" + CHANGE_INSTRUCTIONS
            tools += CHANGE_TOOLS
    return Agent(name=session.agent_name, instructions=instructions, tools=tools)


def session_souls(run: RunContext) -> dict[str, str]:
    """The digest of the session's agent's soul, by agent, when it has a valid one."""
    registry = _registry(run)
    name = run.claim.grant.session.agent_name
    if registry is None or name not in registry:
        return {}
    soul = registry.soul_of(name)
    return {name: soul.digest} if soul.valid and soul.digest else {}


def _registry(run: RunContext) -> AgentRegistry | None:
    return run.agent_runtime.runtime.agents if run.agent_runtime is not None else None


def _tools(run: RunContext, registry: AgentRegistry | None) -> list[FunctionTool]:
    session = run.claim.grant.session
    allowed = set(session.lineage.permission_policy.tools)
    named = [tool for tool in run.lane.tools if tool in allowed]
    builtin = [tool for tool in named if tool in TOOLS]
    if registry is not None and session.agent_name in registry:
        listed = set(registry[session.agent_name].tools)
        builtin = [tool for tool in builtin if tool in listed]
    runtime = [tool for tool in named if tool in RUNTIME_TOOLS and run.agent_runtime is not None]
    return tools_for(run, names=builtin) + tools_for(run, names=runtime, specs=RUNTIME_TOOLS)

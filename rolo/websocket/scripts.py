"""The Lua scripts a Hub's link runs in Redis, each atomic: registering, heartbeats, routing pushes.

Every script takes the key prefix (``rolo:<hub name>:``) as ``ARGV[1]`` and the calling node as ``ARGV[2]``;
:mod:`rolo.websocket.cluster` describes the keys. Scripts name keys they build themselves, which a single
Redis server allows (Redis Cluster would not).
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]


_FORGET = """
local function forget(prefix, node)
  for _, group in ipairs(redis.call('SMEMBERS', prefix .. 'groups:' .. node)) do
    redis.call('SREM', prefix .. 'routes:' .. group, node)
    redis.call('DEL', prefix .. 'members:' .. node .. ':' .. group)
  end
  redis.call('DEL', prefix .. 'groups:' .. node)
  redis.call('SREM', prefix .. 'nodes', node)
end
local function alive(prefix, node)
  return redis.call('EXISTS', prefix .. 'alive:' .. node) == 1
end
-- a thousand members per SADD or SREM: Lua's unpack has a limit
local function each_chunk(command, key, first, last)
  for i = first, last, 1000 do
    redis.call(command, key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end
local function route(prefix, node, group)
  if redis.call('EXISTS', prefix .. 'members:' .. node .. ':' .. group) == 1 then
    redis.call('SADD', prefix .. 'routes:' .. group, node)
    redis.call('SADD', prefix .. 'groups:' .. node, group)
  else
    redis.call('SREM', prefix .. 'routes:' .. group, node)
    redis.call('SREM', prefix .. 'groups:' .. node, group)
  end
end
local prefix, node = ARGV[1], ARGV[2]
"""

# ARGV[3]: ttl in ms. Renews the node's key, forgets expired nodes; 1 if the node's key was still there.
_HEARTBEAT = (
    _FORGET
    + """
local existed = redis.call('SET', prefix .. 'alive:' .. node, '1', 'PX', ARGV[3], 'GET')
redis.call('SADD', prefix .. 'nodes', node)
for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'nodes')) do
  if not alive(prefix, other) then forget(prefix, other) end
end
if existed then return 1 end
return 0
"""
)

# ARGV[3]: ttl in ms, then (group, count, ids...) for each group: the node's whole membership.
_REGISTER = (
    _FORGET
    + """
forget(prefix, node)
redis.call('SET', prefix .. 'alive:' .. node, '1', 'PX', ARGV[3])
redis.call('SADD', prefix .. 'nodes', node)
local i = 4
while i <= #ARGV do
  local group, count = ARGV[i], tonumber(ARGV[i + 1])
  each_chunk('SADD', prefix .. 'members:' .. node .. ':' .. group, i + 2, i + 1 + count)
  route(prefix, node, group)
  i = i + 2 + count
end
return 1
"""
)

# (group, joined count, left count, joined ids..., left ids...) for each group that changed.
_APPLY = (
    _FORGET
    + """
local i = 3
while i <= #ARGV do
  local group, joined, left = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local key = prefix .. 'members:' .. node .. ':' .. group
  each_chunk('SADD', key, i + 3, i + 2 + joined)
  each_chunk('SREM', key, i + 3 + joined, i + 2 + joined + left)
  route(prefix, node, group)
  i = i + 3 + joined + left
end
return 1
"""
)

# ARGV[3]: group, ARGV[4]: the message. Publishes to every other live node with members in the group;
# returns node, receivers, node, receivers ...
_BROADCAST = (
    _FORGET
    + """
local published = {}
for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'routes:' .. ARGV[3])) do
  if other ~= node and alive(prefix, other) then
    published[#published + 1] = other
    published[#published + 1] = redis.call('PUBLISH', prefix .. 'node:' .. other, ARGV[4])
  end
end
return published
"""
)

# ARGV[3]: the receiving node, ARGV[4]: the message. -1 if that node is not alive, else its receivers.
_SEND = (
    _FORGET
    + """
if not alive(prefix, ARGV[3]) then return -1 end
return redis.call('PUBLISH', prefix .. 'node:' .. ARGV[3], ARGV[4])
"""
)

# ARGV[3]: group. The ids of its members on every live node.
_MEMBERS = (
    _FORGET
    + """
local members = {}
for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'routes:' .. ARGV[3])) do
  if alive(prefix, other) then
    for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'members:' .. other .. ':' .. ARGV[3])) do
      members[#members + 1] = id
    end
  end
end
return members
"""
)

# The node leaves the cluster.
_LEAVE = _FORGET + "forget(prefix, node)\nredis.call('DEL', prefix .. 'alive:' .. node)\nreturn 1\n"

SCRIPTS = {
    "heartbeat": _HEARTBEAT,
    "register": _REGISTER,
    "apply": _APPLY,
    "broadcast": _BROADCAST,
    "send": _SEND,
    "members": _MEMBERS,
    "leave": _LEAVE,
}

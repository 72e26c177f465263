-- whoami(): the caller's own session object.
--   herald call whoami
return function()
  return current_session()
end

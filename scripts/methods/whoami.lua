-- whoami(): the caller's own session object. For everyone.
--   herald call whoami
return function()
  return current_session()
end

-- noop(): does nothing; the benchmarks measure a call's round trip with it.
return function() end

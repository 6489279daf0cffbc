# Evaluates a Vagrantfile without Vagrant: a stand-in `Vagrant.configure` records every
# setting and call, and the result is printed as JSON (tests/test_vagrant_files.py reads it).
#
#   ruby tests/vagrant_stub.rb vagrant/Vagrantfile
#
# Calls on `config` and on each `config.vm.define` block are recorded as events
# {"scope": "config" | "machine:NAME", "path": "vm.network", "args": [...], "kwargs": {...}};
# provider blocks record under "provider:NAME" (and their `override` in the machine's scope).
require "json"

EVENTS = []

class Recorder
  def initialize(scope, path = [])
    @scope = scope
    @path = path
  end

  def respond_to_missing?(_name, _include_private = false)
    true
  end

  def method_missing(name, *args, **kwargs, &block)
    name = name.to_s
    if name.end_with?("=")
      EVENTS << { scope: @scope, path: (@path + [name.chomp("=")]).join("."), args: args,
                  kwargs: kwargs, set: true }
      return args.first
    end
    if args.empty? && kwargs.empty? && block.nil?
      return Recorder.new(@scope, @path + [name])       # attribute access: config.vm
    end
    full = (@path + [name]).join(".")
    EVENTS << { scope: @scope, path: full, args: args.map { |a| a.is_a?(Symbol) ? a.to_s : a },
                kwargs: kwargs }
    if block
      case full
      when "vm.define"
        block.call(Recorder.new("machine:#{args.first}"))
      when "vm.provider"
        block.call(Recorder.new("provider:#{args.first}:#{@scope}"), Recorder.new(@scope))
      else
        block.call(*Array.new([block.arity, 1].max) { Recorder.new("#{@scope}:#{full}") })
      end
    end
    nil
  end
end

module Vagrant
  def self.configure(_version)
    yield Recorder.new("config")
  end
end

path = ARGV.fetch(0)
Dir.chdir(File.dirname(path)) do
  load File.basename(path)
end
puts JSON.generate(EVENTS)

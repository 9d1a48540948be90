//! Running a parsed template over a value, as text/template's `Execute`
//! does, within an output limit and a step budget.

use super::TemplateError;
use super::funcs;
use super::parse::{Arg, Branch, Node, Pipe, Term};
use super::value::Value;

/// Steps (nodes, commands, range iterations) one render may take: a
/// template over thousands of changes uses a fraction of it.
const FUEL: u64 = 1_000_000;

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec {
    pub out: String,
    limit: usize,
    fuel: u64,
    vars: Vec<(String, Value)>,
}

impl Exec {
    pub fn new(root: &Value, limit: usize) -> Exec {
        Exec {
            out: String::new(),
            limit,
            fuel: FUEL,
            vars: vec![("$".to_string(), root.clone())],
        }
    }

    pub fn run(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        match self.walk(nodes, dot)? {
            Flow::Normal => Ok(()),
            Flow::Break | Flow::Continue => Err(err("{{break}} or {{continue}} outside {{range}}")),
        }
    }

    fn burn(&mut self) -> Result<(), TemplateError> {
        self.fuel = self
            .fuel
            .checked_sub(1)
            .ok_or_else(|| err(format!("the template took more than {FUEL} steps")))?;
        Ok(())
    }

    fn emit(&mut self, text: &str) -> Result<(), TemplateError> {
        if self.out.len() + text.len() > self.limit {
            return Err(err(format!(
                "the message would be longer than {} KiB",
                self.limit >> 10
            )));
        }
        self.out.push_str(text);
        Ok(())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            self.burn()?;
            let flow = match node {
                Node::Text(text) => {
                    self.emit(text)?;
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let value = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        self.emit(&value.print())?;
                    }
                    Flow::Normal
                }
                Node::If(branch) => self.scoped(|exec| {
                    if exec.pipe(&branch.pipe, dot)?.truth() {
                        exec.walk(&branch.list, dot)
                    } else {
                        exec.walk(&branch.otherwise, dot)
                    }
                })?,
                Node::With(branch) => self.scoped(|exec| {
                    let value = exec.pipe(&branch.pipe, dot)?;
                    if value.truth() {
                        exec.walk(&branch.list, &value)
                    } else {
                        exec.walk(&branch.otherwise, dot)
                    }
                })?,
                Node::Range(branch) => self.scoped(|exec| exec.range(branch, dot))?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// Variables declared inside a control action end with it.
    fn scoped(
        &mut self,
        body: impl FnOnce(&mut Exec) -> Result<Flow, TemplateError>,
    ) -> Result<Flow, TemplateError> {
        let mark = self.vars.len();
        let flow = body(self);
        self.vars.truncate(mark);
        flow
    }

    fn range(&mut self, branch: &Branch, dot: &Value) -> Result<Flow, TemplateError> {
        let pipe = &branch.pipe;
        let value = self.commands(pipe, dot)?;
        let items: Vec<(Value, Value)> = match &value {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(map) => map.entries().to_vec(),
            // Each iteration costs a step: a count past the budget fails
            // here rather than after allocating it.
            Value::Int(n) if u64::try_from(*n).is_ok_and(|n| n > self.fuel) => {
                return Err(err(format!("the template took more than {FUEL} steps")));
            }
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Missing | Value::Nil => Vec::new(),
            other => {
                return Err(err(format!("range can't iterate over {}", other.print())));
            }
        };
        if items.is_empty() {
            return self.walk(&branch.otherwise, dot).map(|_| Flow::Normal);
        }
        for (key, element) in items {
            self.burn()?;
            let mark = self.vars.len();
            match pipe.decl.as_slice() {
                [] => {}
                [one] => self.vars.push((one.clone(), element.clone())),
                [k, v, ..] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), element.clone()));
                }
            }
            let flow = self.walk(&branch.list, &element);
            self.vars.truncate(mark);
            if let Flow::Break = flow? {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// A pipeline's value, declaring or assigning its variables.
    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let value = self.commands(pipe, dot)?;
        for name in &pipe.decl {
            if pipe.assign {
                let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) else {
                    return Err(err(format!("undefined variable: {name}")));
                };
                slot.1 = value.clone();
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut value = None;
        for cmd in &pipe.cmds {
            self.burn()?;
            value = Some(self.command(cmd, dot, value)?);
        }
        Ok(value.unwrap_or(Value::Missing))
    }

    fn command(
        &mut self,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some(first) = args.first() else {
            return Err(err("empty command"));
        };
        if let (Term::Func(name), true) = (&first.term, first.chain.is_empty()) {
            let rest = &args[1..];
            // `and` and `or` stop at the first argument that decides.
            if name == "and" || name == "or" {
                let want = name == "or";
                let mut last = Value::Missing;
                let count = rest.len() + usize::from(piped.is_some());
                if count == 0 {
                    return Err(err(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    )));
                }
                for arg in rest {
                    last = self.arg(arg, dot)?;
                    if last.truth() == want {
                        return Ok(last);
                    }
                }
                return Ok(piped.unwrap_or(last));
            }
            let mut values = Vec::with_capacity(rest.len() + 1);
            for arg in rest {
                values.push(self.arg(arg, dot)?);
            }
            values.extend(piped);
            let value = funcs::call(name, values, self.limit)
                .map_err(|e| err(format!("error calling {name}: {e}")))?;
            // No value outgrows the message: `$x = print $x $x` in a range
            // would double it each time.
            if let Value::Str(s) = &value
                && s.len() > self.limit
            {
                return Err(err(format!(
                    "{name} made a value longer than {} KiB",
                    self.limit >> 10
                )));
            }
            return Ok(value);
        }
        if args.len() > 1 || piped.is_some() {
            return Err(err("can't give an argument to a non-function"));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        let mut value = match &arg.term {
            Term::Dot => dot.clone(),
            Term::Var(name) => self
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| err(format!("undefined variable: {name}")))?,
            Term::Func(name) => funcs::call(name, Vec::new(), self.limit)
                .map_err(|e| err(format!("error calling {name}: {e}")))?,
            Term::Str(s) => Value::str(s.as_str()),
            Term::Int(i) => Value::Int(*i),
            Term::Float(f) => Value::Float(*f),
            Term::Bool(b) => Value::Bool(*b),
            Term::Nil => Value::Nil,
            Term::Sub(pipe) => self.pipe(pipe, dot)?,
        };
        for name in &arg.chain {
            value = field(&value, name)?;
        }
        Ok(value)
    }
}

/// `.Name` of a value: a struct's field or method, a map's key.
fn field(value: &Value, name: &str) -> Result<Value, TemplateError> {
    match value {
        Value::Struct(s) => s.member(name).ok_or_else(|| {
            err(format!(
                "can't evaluate field {name} in type {}",
                s.type_name
            ))
        }),
        Value::Map(map) => Ok(map.get(name).cloned().unwrap_or(Value::Missing)),
        Value::Missing | Value::Nil => Err(err(format!("nil pointer evaluating .{name}"))),
        other => Err(err(format!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        ))),
    }
}

fn err(message: impl Into<String>) -> TemplateError {
    TemplateError(message.into())
}

"""Unit tests of the dump module against the verl stand-in (stdlib unittest; needs torch).

    PYTHONPATH=python:python/tests/fake_verl /usr/bin/python3 -m unittest discover -s python/tests -p 'test_*.py'
"""

import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import torch

import rlvec_dump
from rlvec_dump import hooks, st
from rlvec_dump.writer import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
FAKE_VERL = os.path.join(HERE, "fake_verl")

logging.getLogger("rlvec_dump").setLevel(logging.ERROR)


def files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors")) if os.path.isdir(d) else []


class Dumping(unittest.TestCase):
    """Each test dumps into its own directory with the environment's limits unless it sets its own."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rlvec-dump-test-")
        self.saved = {k: os.environ.get(k) for k in
                      ("RLVEC_DUMP_GRADS", "RLVEC_DUMP_MAX_FILES", "RLVEC_DUMP_MAX_BYTES", "RLVEC_DUMP_FUNCTIONS",
                       "RLVEC_DUMP_EVERY",
                       "RLVEC_DUMP_RANKS", "RLVEC_VERL_COMMIT", "FAKE_VERL_BUG")}
        for k in self.saved:
            os.environ.pop(k, None)

    def tearDown(self):
        rlvec_dump.uninstall()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def install(self, **env):
        for k, v in env.items():
            os.environ[k] = str(v)
        return rlvec_dump.install(self.dir)

    def load(self, name):
        return st.load(os.path.join(self.dir, name))


class FormatTest(Dumping):
    def test_header_is_space_padded_to_8_bytes_and_offsets_tile_the_data(self):
        tensors = {"in.a": st.storable(torch.arange(5, dtype=torch.float32)),
                   "in.m": st.storable(torch.tensor([1, 0, 1], dtype=torch.uint8)),
                   "out.s": st.storable(torch.tensor(2.5))}
        raw = st.encode(tensors, {"function": "f", "params": "{}"})
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual(n % 8, 0)
        text = raw[8:8 + n].decode()
        self.assertEqual(text, text.rstrip(" ") + " " * (len(text) - len(text.rstrip(" "))))
        header = json.loads(text)
        self.assertEqual(header["__metadata__"], {"function": "f", "params": "{}"})
        self.assertEqual(header["in.a"], {"dtype": "F32", "shape": [5], "data_offsets": [0, 20]})
        self.assertEqual(header["in.m"]["data_offsets"], [20, 23])
        self.assertEqual(header["out.s"], {"dtype": "F32", "shape": [], "data_offsets": [23, 27]})
        self.assertEqual(len(raw), 8 + n + 27)
        self.assertEqual(raw[8 + n:8 + n + 4], struct.pack("<f", 0.0))

    def test_round_trip_of_every_dtype_parity_reads(self):
        src = {"f32": torch.randn(3, 4), "f64": torch.randn(2, dtype=torch.float64),
               "bf16": torch.randn(5).to(torch.bfloat16), "i32": torch.tensor([1, -2], dtype=torch.int32),
               "i64": torch.tensor([[7, -9]]), "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
               "bool": torch.tensor([True, False]), "empty": torch.zeros(0, 3)}
        path = os.path.join(self.dir, "x.safetensors")
        st.save(path, {k: st.storable(v) for k, v in src.items()}, {"k": "v"})
        back, md = st.load(path)
        self.assertEqual(md, {"k": "v"})
        for k, v in src.items():
            self.assertEqual(back[k].dtype, v.dtype, k)
            self.assertTrue(torch.equal(back[k], v), k)

    def test_float16_is_stored_as_exact_float32(self):
        t = torch.tensor([1.0009765625, -3.5], dtype=torch.float16)
        s = st.storable(t)
        self.assertEqual(s.dtype, torch.float32)
        self.assertTrue(torch.equal(s, t.float()))

    def test_the_safetensors_package_reads_our_files_when_installed(self):
        try:
            from safetensors.torch import load_file
        except ImportError:
            self.skipTest("safetensors is not installed")
        path = os.path.join(self.dir, "y.safetensors")
        st.save(path, {"a": st.storable(torch.randn(3)), "b": st.storable(torch.tensor([1, 2]))}, {"m": "1"})
        back = load_file(path)
        self.assertEqual(set(back), {"a", "b"})


def _noisy_policy_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                       rollout_is_weights=None):
    """A policy loss that draws random numbers, as clip_cov does."""
    keep = (torch.rand(log_prob.shape) < 0.5).float()
    return (-(advantages * log_prob) * keep * response_mask).sum(), {}


class WrapperTest(Dumping):
    def vanilla_call(self):
        from verl.trainer.ppo import core_algos
        g = torch.Generator().manual_seed(3)
        old = torch.randn(3, 5, generator=g)
        lp = (old + 0.1 * torch.randn(3, 5, generator=g)).requires_grad_(True)
        adv = torch.randn(3, 5, generator=g)
        mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
        cfg = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0}
        fn = core_algos.get_policy_loss_fn("vanilla")
        return fn(old, lp, adv, mask, "seq-mean-token-mean", cfg), lp

    def test_policy_loss_file_has_golden_names_params_and_gradient(self):
        self.install(RLVEC_DUMP_GRADS=1)
        (loss, metrics), lp = self.vanilla_call()
        names = files(self.dir)
        self.assertEqual(len(names), 1, names)  # its inner agg_loss call is not dumped
        self.assertIn("_pl_vanilla_", names[0])
        t, md = self.load(names[0])
        self.assertEqual(list(t), ["in.old_log_prob", "in.log_prob", "in.advantages", "in.response_mask",
                                   "out.pg_loss", "out.pg_clipfrac", "out.ppo_kl", "out.pg_clipfrac_lower",
                                   "out.grad_log_prob"])
        self.assertEqual(md["function"], "verl.trainer.ppo.core_algos.compute_policy_loss_vanilla")
        self.assertEqual(md["group"], "policy_loss:vanilla")
        self.assertEqual(json.loads(md["params"]), {"clip_ratio": 0.2, "clip_ratio_low": 0.2,
                                                    "clip_ratio_high": 0.28, "clip_ratio_c": 3.0,
                                                    "loss_agg_mode": "seq-mean-token-mean"})
        self.assertEqual(md["param.clip_ratio_high"], "0.28")
        self.assertEqual((md["dtype"], md["mask_passed_to_verl_as"]), ("f32", "float32"))
        self.assertEqual(md["inputs"], "in.old_log_prob,in.log_prob,in.advantages,in.response_mask")
        self.assertEqual(t["in.response_mask"].dtype, torch.uint8)
        self.assertEqual(t["out.pg_loss"].item(), loss.item())
        self.assertEqual(t["out.ppo_kl"].item(), torch.tensor(metrics["actor/ppo_kl"]).item())
        # The recorded gradient is autograd's, and the trainer's own graph is intact.
        (expected,) = torch.autograd.grad(loss, [lp], retain_graph=True)
        self.assertTrue(torch.equal(t["out.grad_log_prob"], expected))
        self.assertIsNone(lp.grad)
        loss.backward()
        self.assertTrue(torch.equal(lp.grad, expected))

    def test_the_gradient_re_run_leaves_the_random_generator_alone(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_GRADS=1)
        core_algos.POLICY_LOSS_REGISTRY["noisy"] = noisy = rlvec_dump.hooks.make_wrapper(
            rlvec_dump.table.policy_loss_entry("noisy", attr="noisy"), _noisy_policy_loss)
        try:
            torch.manual_seed(11)
            lp = torch.zeros(2, 3, requires_grad=True)
            noisy(torch.zeros(2, 3), lp, torch.ones(2, 3), torch.ones(2, 3), "token-mean", {})
            after_dumped_call = torch.rand(1)
            torch.manual_seed(11)
            _noisy_policy_loss(torch.zeros(2, 3), lp, torch.ones(2, 3), torch.ones(2, 3), "token-mean", {})
            self.assertTrue(torch.equal(after_dumped_call, torch.rand(1)))
        finally:
            del core_algos.POLICY_LOSS_REGISTRY["noisy"]
        # The re-run drew the same numbers as the call: the recorded gradient is the call's own, -A * keep.
        t, _ = self.load(files(self.dir)[0])
        torch.manual_seed(11)
        keep = (torch.rand(2, 3) < 0.5).float()
        self.assertTrue(torch.equal(t["out.grad_log_prob"], -keep))

    def test_gradients_only_when_asked(self):
        self.install()
        self.vanilla_call()
        t, md = self.load(files(self.dir)[0])
        self.assertNotIn("out.grad_log_prob", t)

    def test_verl_commit_from_the_environment(self):
        self.install(RLVEC_VERL_COMMIT="2026-01")
        self.vanilla_call()
        _, md = self.load(files(self.dir)[0])
        self.assertEqual(md["verl_commit"], "2026-01")

    def test_expect_error_case_has_inputs_and_no_outputs_and_the_trainer_sees_verl_exception(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_GRADS=1)
        with self.assertRaises(NotImplementedError):
            core_algos.kl_penalty(torch.zeros(2, 3), torch.ones(2, 3), "full")
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(list(t), ["in.logprob", "in.ref_logprob"])
        self.assertEqual(md["outputs"], "")
        self.assertTrue(json.loads(md["params"])["expect_error"].startswith("NotImplementedError: "))

    def test_file_limit(self):
        from verl.trainer.ppo import core_algos
        d = self.install(RLVEC_DUMP_MAX_FILES=2)
        for _ in range(5):
            core_algos.kl_penalty(torch.zeros(2, 3), torch.ones(2, 3), "kl")
        self.assertEqual(len(files(self.dir)), 2)
        self.assertEqual(d._files, 2)

    def test_every_nth_call_of_each_function(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_EVERY=3)
        for i in range(7):
            core_algos.kl_penalty(torch.full((1, 2), float(i)), torch.zeros(1, 2), "kl")
            core_algos.agg_loss(torch.ones(1, 2), torch.ones(1, 2), "token-mean")
        kl = [f for f in files(self.dir) if "kl_penalty" in f]
        self.assertEqual(len(kl), 3)  # calls 0, 3 and 6
        self.assertEqual([self.load(f)[0]["in.logprob"][0, 0].item() for f in kl], [0.0, 3.0, 6.0])
        self.assertEqual(len(files(self.dir)), 6)

    def test_byte_limit_is_checked_before_copying(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_MAX_BYTES=200)
        core_algos.kl_penalty(torch.zeros(2, 3), torch.ones(2, 3), "kl")  # 3 x 24 bytes: fits
        core_algos.kl_penalty(torch.zeros(20, 30), torch.ones(20, 30), "kl")  # does not
        self.assertEqual(len(files(self.dir)), 1)

    def test_function_filter(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_FUNCTIONS="agg_loss,kl_penalty")
        self.vanilla_call()  # not dumped itself; its inner agg_loss call is, since nothing around it is dumped
        core_algos.agg_loss(torch.ones(2, 2), torch.ones(2, 2), "token-mean")
        core_algos.compute_value_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.5)
        # the policy loss's, the direct call's and the value loss's agg_loss calls
        self.assertEqual([f.split("_", 1)[1].rsplit("_r", 1)[0] for f in files(self.dir)], ["agg_loss"] * 3)

    def test_a_failing_dump_never_reaches_the_trainer(self):
        from verl.trainer.ppo import core_algos
        blocker = os.path.join(self.dir, "not-a-dir")
        with open(blocker, "w") as f:
            f.write("x")
        rlvec_dump.install(os.path.join(blocker, "sub"))  # makedirs fails
        out = core_algos.kl_penalty(torch.zeros(2, 3), torch.ones(2, 3), "abs")
        self.assertTrue(torch.equal(out, torch.ones(2, 3)))
        # a broken table entry: its outputs function raises
        entry = next(e for e in rlvec_dump.table.ENTRIES if e.attr == "kl_penalty")
        saved = entry.outputs
        entry.outputs = lambda r: 1 / 0
        try:
            rlvec_dump.install(self.dir)
            out = core_algos.kl_penalty(torch.zeros(2, 3), torch.ones(2, 3), "abs")
            self.assertTrue(torch.equal(out, torch.ones(2, 3)))
        finally:
            entry.outputs = saved
        self.assertEqual(files(self.dir), [])

    def test_non_binary_mask_is_kept_as_passed(self):
        from verl.trainer.ppo import core_algos
        self.install()
        core_algos.agg_loss(torch.ones(2, 2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), "token-mean")
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(t["in.loss_mask"].dtype, torch.float32)
        self.assertIn("other than 0/1", md["notes"])

    def test_bool_mask_is_u8_and_named(self):
        from verl.trainer.ppo import core_algos
        self.install()
        core_algos.agg_loss(torch.ones(2, 2), torch.tensor([[True, False], [True, True]]), "token-mean")
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(t["in.loss_mask"].tolist(), [[1, 0], [1, 1]])
        self.assertEqual(t["in.loss_mask"].dtype, torch.uint8)
        self.assertEqual(md["mask_passed_to_verl_as"], "bool")

    def test_advantage_file_names_match_the_golden_files(self):
        from verl.trainer.ppo import core_algos
        self.install()
        rewards = torch.zeros(4, 3)
        rewards[:, -1] = torch.tensor([1.0, 0.0, 1.0, 1.0])
        uid = ["a", "b", "a", "b"]
        core_algos.compute_grpo_outcome_advantage(rewards, torch.ones(4, 3), uid, norm_adv_by_std_in_grpo=False)
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(list(t), ["in.token_level_rewards", "in.response_mask", "in.index", "out.advantages",
                                   "out.returns"])
        self.assertEqual(t["in.index"].tolist(), [0, 1, 0, 1])
        self.assertEqual(md["group"], "advantage:grpo")
        self.assertEqual(json.loads(md["params"]), {"epsilon": 1e-6, "norm_adv_by_std_in_grpo": False})

    def test_value_loss_file_names_match_the_golden_files(self):
        from verl.trainer.ppo import core_algos
        self.install(RLVEC_DUMP_GRADS=1)
        v = torch.randn(2, 3, requires_grad=True)
        core_algos.compute_value_loss(v, torch.randn(2, 3), torch.randn(2, 3), torch.ones(2, 3), 0.5, "token-mean")
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(list(t), ["in.vpreds", "in.returns", "in.values", "in.response_mask", "out.vf_loss",
                                   "out.vf_clipfrac", "out.grad_vpreds"])
        self.assertEqual(json.loads(md["params"]), {"cliprange_value": 0.5, "loss_agg_mode": "token-mean"})

    def test_apply_kl_penalty_file_names_match_the_golden_files(self):
        from verl.trainer.ppo import core_algos, ray_trainer
        self.install()
        g = torch.Generator().manual_seed(5)
        batch = {"token_level_scores": torch.randn(3, 4, generator=g), "old_log_probs": torch.randn(3, 4, generator=g),
                 "ref_log_prob": torch.randn(3, 4, generator=g), "response_mask": torch.ones(3, 4)}
        ctrl = core_algos.AdaptiveKLController(0.2, 0.05, 100)
        ray_trainer.apply_kl_penalty(ray_trainer.DataProto(batch), ctrl, "abs")
        names = files(self.dir)
        self.assertEqual(len(names), 1, names)  # the kl_penalty inside it is not dumped again
        t, md = self.load(names[0])
        self.assertEqual(list(t), ["in.token_level_scores", "in.old_log_probs", "in.ref_log_prob",
                                   "in.response_mask", "out.token_level_rewards", "out.current_kl", "out.beta_used",
                                   "out.kl_coef_after_update"])
        self.assertEqual(json.loads(md["params"]), {"horizon": 100, "init_kl_coef": 0.2, "kl_ctrl": "adaptive",
                                                    "kl_penalty": "abs", "target_kl": 0.05})
        self.assertEqual(t["out.beta_used"].item(), 0.2)
        self.assertEqual(t["out.kl_coef_after_update"].item(), ctrl.value)
        self.assertTrue(torch.equal(t["out.token_level_rewards"], batch["token_level_rewards"]))

    def test_compute_rewards_file(self):
        from verl.trainer.ppo import core_algos
        self.install()
        core_algos.compute_rewards(torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3), 0.001)
        t, md = self.load(files(self.dir)[0])
        self.assertEqual(list(t), ["in.token_level_scores", "in.old_log_prob", "in.ref_log_prob",
                                   "out.token_level_rewards"])
        self.assertEqual(json.loads(md["params"]), {"kl_ratio": 0.001})

    def test_every_table_entry_names_a_function_and_a_group(self):
        for e in rlvec_dump.table.ENTRIES:
            self.assertTrue(e.function and e.group and e.short, e.attr)


class DocsTest(unittest.TestCase):
    def test_the_format_spec_shows_the_stdlib_example_verbatim(self):
        root = os.path.dirname(PYTHON_DIR)
        with open(os.path.join(PYTHON_DIR, "examples", "write_case_stdlib.py")) as f:
            example = f.read()
        with open(os.path.join(root, "docs", "dump-format.md")) as f:
            spec = f.read()
        self.assertIn("```python\n" + example + "```\n", spec)


class ImportHookTest(unittest.TestCase):
    def test_sitecustomize_wraps_verl_when_it_is_imported_later(self):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([os.path.join(PYTHON_DIR, "rlvec_dump_sitecustomize"), PYTHON_DIR,
                                                 FAKE_VERL])
            env["RLVEC_DUMP_DIR"] = d
            code = ("import sys; assert 'verl' not in sys.modules and 'torch' not in sys.modules\n"
                    "from verl.trainer.ppo.core_algos import kl_penalty\n"
                    "import torch; kl_penalty(torch.zeros(1, 2), torch.ones(1, 2), 'mse')\n")
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            self.assertEqual(len(files(d)), 1)

    def test_auto_targets_are_the_tables_modules(self):
        import rlvec_dump.auto
        self.assertEqual(set(rlvec_dump.auto.TARGETS), set(rlvec_dump.table.by_module()))

    def test_sitecustomize_without_the_variable_imports_nothing(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(PYTHON_DIR, "rlvec_dump_sitecustomize"),
                                                           PYTHON_DIR, FAKE_VERL]))
        env.pop("RLVEC_DUMP_DIR", None)
        code = "import sys; assert 'rlvec_dump' in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    def test_install_after_import_rebinds_names_imported_earlier(self):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, FAKE_VERL]))
            # A verl module that did "from ... import entropy_from_logits" before the install.
            code = ("import sys, types\n"
                    "from verl.trainer.ppo import core_algos\n"
                    "import verl.utils.torch_functional as F\n"
                    "worker = types.ModuleType('verl.workers_stand_in')\n"
                    "worker.entropy_from_logits = F.entropy_from_logits\n"
                    "sys.modules[worker.__name__] = worker\n"
                    "import rlvec_dump, torch\n"
                    f"rlvec_dump.install({d!r})\n"
                    "worker.entropy_from_logits(torch.randn(3, 5))\n"
                    "core_algos.POLICY_LOSS_REGISTRY['vanilla'](torch.zeros(1, 2), torch.zeros(1, 2),"
                    " torch.ones(1, 2), torch.ones(1, 2), 'token-mean', {'clip_ratio': 0.2})\n")
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            names = files(d)
            self.assertEqual(len(names), 2, names)
            self.assertIn("entropy_from_logits", names[0])
            self.assertIn("pl_vanilla", names[1])


if __name__ == "__main__":
    unittest.main()
